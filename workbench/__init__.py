"""wb: the application room. CLI (thin), configs, errors and the use cases joining the rooms."""
__version__ = "0.1.0"
