"""Supplier tariffs shipped as data (EDF's regulated Tarif Bleu); `tempo` fetches and caches Tempo day colours (I/O)."""
