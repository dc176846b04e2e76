"""The request schema and its tables: fields, values, task types, formats, units. Light: no torch, no soundfile."""
