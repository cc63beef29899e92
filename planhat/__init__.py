"""Planhat CRM adapter: fetches companies and custom field definitions over the REST API."""
