"""What every process reports: log lines (text or JSON, secrets masked, personal data redacted)
and the Prometheus counters the scheduler and workers add to in Redis."""
