"""The tether operator (kopf). Import name is tether_operator: `operator` is the stdlib's."""
