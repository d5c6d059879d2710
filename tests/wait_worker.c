/* Placeholder: filled in by the change that implements it. */
int main(void) { return 0; }
