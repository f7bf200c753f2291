"""Lambda entry points: thin adapters that parse the event, call the logic, shape the result.

All logic lives in plain modules (`collage.split_task`, `collage.collage_task`, ...); these
modules only read the function's environment, set up Powertools, and translate.
"""
