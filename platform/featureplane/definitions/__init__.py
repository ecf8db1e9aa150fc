"""The declarative SDK: the objects a feature repository is written with."""
