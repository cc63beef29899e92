"""HTTP servers on 127.0.0.1 that speak the Planhat and Slack Web APIs, for the demo and tests."""
