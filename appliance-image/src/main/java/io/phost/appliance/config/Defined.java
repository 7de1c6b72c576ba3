package io.phost.appliance.config;

/** A name and where it was first defined, for duplicate and reference checks. */
record Defined<T>(T value, TomlNode node) {
}
