"""gov inside the training frameworks' own loops (each an optional extra)."""
