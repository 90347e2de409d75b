using System;

namespace Llama.Compiled;

/// <summary>
/// A grammar or a JSON schema that <see cref="Grammar"/> cannot compile: malformed GBNF (with the line and column), a
/// rule that is used but not defined or is left-recursive, a schema that is not valid JSON or uses a construct that is
/// not supported (with the JSON pointer of the subschema). Thrown by <see cref="Grammar.FromGbnf"/> and
/// <see cref="Grammar.FromJsonSchema(string)"/>, before any generation starts.
/// </summary>
public sealed class GrammarFormatException : FormatException
{
    /// <summary>Creates the exception with a message and no location.</summary>
    public GrammarFormatException(string message) : base(message)
    {
    }

    /// <summary>Creates the exception with a message and the exception that caused it.</summary>
    public GrammarFormatException(string message, Exception innerException) : base(message, innerException)
    {
    }

    internal GrammarFormatException(string message, int line, int column) : base($"{message} (line {line}, column {column})")
    {
        Line = line;
        Column = column;
    }

    internal GrammarFormatException(string message, string jsonPointer, Exception? innerException = null)
        : base($"{message} (at JSON pointer '{jsonPointer}')", innerException)
    {
        JsonPointer = jsonPointer;
    }

    /// <summary>The line (from 1) of the GBNF text where the error is, or 0.</summary>
    public int Line { get; }

    /// <summary>The column (from 1) of the GBNF text where the error is, or 0.</summary>
    public int Column { get; }

    /// <summary>The JSON pointer (RFC 6901, <c>""</c> = the whole schema) of the subschema in error, or null.</summary>
    public string? JsonPointer { get; }
}
