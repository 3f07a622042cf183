"""Automatic calls and their results: the autocall request, the `call`/`calls` commands and the
call-result callback receiver."""
