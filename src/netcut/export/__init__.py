"""Export the chosen network in a deployment format, checked in its runtime, with a manifest."""
