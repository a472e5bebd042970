package io.segstream.engine;

/** A catalogue that cannot be used (operators/catalogue.py CatalogueError). */
public final class CatalogueException extends IllegalArgumentException {
  public CatalogueException(String message) {
    super(message);
  }
}
