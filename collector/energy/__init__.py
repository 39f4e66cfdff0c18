"""Energy windows, tariff periods and sessions from meter indexes (pure; state via a StateStore)."""
