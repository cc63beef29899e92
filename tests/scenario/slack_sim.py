"""Scenario tests import the Slack request simulator from here."""

from loopback.slack_requests import ADMIN_ID, MEMBER_ID, TEAM_ID, SlackResponse, SlackSimulator

__all__ = ["ADMIN_ID", "MEMBER_ID", "TEAM_ID", "SlackResponse", "SlackSimulator"]
