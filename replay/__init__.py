"""Replay: delivering requested replays of dead-lettered messages to their target systems
and recording each outcome."""
