package io.segstream.engine;

/** A record that breaks the event contract; the message is the dead-letter reason
 * (operators/events.py InvalidEvent). */
public final class InvalidEvent extends Exception {
  public InvalidEvent(String reason) {
    super(reason, null, false, false);
  }

  public String reason() {
    return getMessage();
  }
}
