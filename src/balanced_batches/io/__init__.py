"""Reading and writing of ROOT files beyond what uproot offers by itself."""
