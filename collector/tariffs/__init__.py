"""Supplier tariffs shipped as data (EDF's regulated Tarif Bleu)."""
