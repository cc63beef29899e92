"""Settings shared by every test."""

from hypothesis import HealthCheck, settings

# Generated rule trees are large, and a busy CI machine can make generation look slow; the
# examples themselves are what the tests check, so the speed health checks and deadlines are off.
settings.register_profile(
    "segment-bot",
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    deadline=None,
)
settings.load_profile("segment-bot")
