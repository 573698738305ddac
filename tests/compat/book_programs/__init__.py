"""The *Neural Networks from Scratch* chapter 16 and 17 programs, written against
:mod:`nnback.compat.nnfs` the way the book's reader writes them (imports, ``init()``, the
data call, the layers, the training loop and the book's print format). Each returns the
lines it printed, for the tests to compare with the book's."""
