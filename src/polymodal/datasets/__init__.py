"""Data generators made by the project (test and benchmark sets that no one else ships)."""
