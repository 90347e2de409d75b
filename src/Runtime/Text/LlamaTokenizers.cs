using System;
using System.IO;
using Microsoft.ML.Tokenizers;

namespace Llama.Compiled;

/// <summary>Loads the SentencePiece tokenizer that sits beside a model.</summary>
public static class LlamaTokenizers
{
    /// <summary>The tokenizer file looked for in the model's folder.</summary>
    public const string FileName = "tokenizer.model";

    /// <summary>
    /// Reads the <c>tokenizer.model</c> (a SentencePiece model) of the model at
    /// <paramref name="modelPath"/>. Encoding adds BOS and no EOS, as Llama expects.
    /// </summary>
    /// <param name="modelPath">The model's folder, or a file in it (the weights).</param>
    /// <exception cref="FileNotFoundException">There is no <c>tokenizer.model</c> where it was looked for; the message names that path.</exception>
    /// <exception cref="ModelFormatException">The file is not a SentencePiece model.</exception>
    public static Tokenizer Load(string modelPath)
    {
        ArgumentException.ThrowIfNullOrEmpty(modelPath);
        string folder = Directory.Exists(modelPath)
            ? modelPath
            : Path.GetDirectoryName(Path.GetFullPath(modelPath)) ?? modelPath;
        string path = Path.GetFullPath(Path.Combine(folder, FileName));
        if (!File.Exists(path))
            throw new FileNotFoundException($"Tokenizer not found: {path}", path);

        using FileStream stream = File.OpenRead(path);
        try
        {
            return LlamaTokenizer.Create(stream, addBeginOfSentence: true, addEndOfSentence: false);
        }
        catch (Exception e) when (e is not IOException and not OutOfMemoryException)
        {
            // The protobuf reader fails with assorted exception types (even NullReferenceException) on a
            // file that is not a SentencePiece model; callers should see one documented type naming the file.
            throw new ModelFormatException($"{path} is not a SentencePiece tokenizer model: {e.Message}", e);
        }
    }
}
