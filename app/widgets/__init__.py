"""Embeddable chat widgets: management API, the public runtime embed.js calls, and its script."""
