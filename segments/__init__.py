"""Segment engine: rules over CRM company data, channel resolution and broadcasting."""
