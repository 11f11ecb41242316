"""fax-bridge: an email-to-fax and fax-to-email bridge for the InterFAX REST API."""

__version__ = "0.1.0"
