using System;

namespace Llama.Compiled;

/// <summary>
/// A model file is missing, truncated, corrupted, or does not match the shape the model was
/// compiled for. The message names the file and, where one is at fault, the tensor, with the
/// expected and the actual value.
/// </summary>
public sealed class ModelFormatException : Exception
{
    /// <summary>Creates the exception with a message that says what is wrong and where.</summary>
    public ModelFormatException(string message) : base(message) { }

    /// <summary>Creates the exception with a message and the error that revealed the problem.</summary>
    public ModelFormatException(string message, Exception innerException) : base(message, innerException) { }
}
