"""Selection: the explained score that picks a week's comparisons (`scoring`), the topics readers
choose from (`topics`) and the interest learnt from readers' clicks (`interest`)."""
