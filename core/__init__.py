"""Shared pieces of Wattline: configuration helpers, the data model, the storage interface and its backends.

``core`` is imported by the collectors, the analytics, the dashboard, the simulator and the command line; it imports
none of them.
"""
