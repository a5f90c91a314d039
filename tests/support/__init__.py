"""Test support shared by the test folders (never installed)."""
