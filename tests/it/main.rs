mod adapters;
