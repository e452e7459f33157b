"""Knowledge: loaders, chunking, embedding, vector stores, metadata, search."""
