"""`ragnet eval …`: evaluation over shared/data/FORMATS.md formats."""
