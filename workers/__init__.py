"""Worker-side code: provider adapters that make the calls and the simulated provider."""
