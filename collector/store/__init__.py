"""Reading InfluxDB back with InfluxQL (I/O), for bills, comparisons and re-pricing."""
