"""Reference solutions of the course's exercises, one module a chapter (solutions.ch03, ...).

Kept out of the installed `diffedu` package, so that a checker's source does not give the answer
away. tests/test_exercises_chNN.py import them to prove every checker passes its reference.
"""
