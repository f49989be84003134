"""The OPC UA collector: configuration, discovery, sessions and the collector loop (asyncua)."""
