"""Examples of extending crowdstream, written the way a user writes them: a PE
(``language``) and a crowd adapter (``replay_crowd``)."""
