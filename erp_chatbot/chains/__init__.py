"""The question-answering chain, in plain LCEL."""
