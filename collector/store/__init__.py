"""Reading InfluxDB back with InfluxQL (I/O), for bills, comparisons and re-pricing;
`downsample` only builds the statements and lines of the per-minute and per-hour readings."""
