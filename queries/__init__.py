"""The one door to Q2C's data: named read functions for every page and the commands of people.

Readers take an SQLAlchemy engine and return plain rows, dataclasses or DataFrames; they
never build SQL in the caller's place.
"""
