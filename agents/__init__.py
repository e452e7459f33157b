"""Skills: generators, model preparation, answer composition."""
