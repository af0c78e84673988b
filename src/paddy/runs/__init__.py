"""What paddy keeps on disk: run folders and finding them, the predictions format, memory-probe records."""
