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
    /// <param name="modelPath">The model's folder, or a file in it (the weights); a <c>.gguf</c> file supplies its own vocabulary.</param>
    /// <exception cref="FileNotFoundException">There is no <c>tokenizer.model</c> where it was looked for; the message names that path.</exception>
    /// <exception cref="ModelFormatException">The file is not a SentencePiece model.</exception>
    public static Tokenizer Load(string modelPath)
    {
        ArgumentException.ThrowIfNullOrEmpty(modelPath);
        // A GGUF file carries its vocabulary: it alone is enough to generate text.
        if (File.Exists(modelPath) && modelPath.EndsWith(".gguf", StringComparison.OrdinalIgnoreCase))
            return GgufTokenizer.Load(modelPath);
        string folder = Directory.Exists(modelPath)
            ? modelPath
            : Path.GetDirectoryName(Path.GetFullPath(modelPath)) ?? modelPath;
        string path = Path.GetFullPath(Path.Combine(folder, FileName));
        if (!File.Exists(path))
            throw new FileNotFoundException($"Tokenizer not found: {path}", path);

        // Read first so that only parse errors are caught below: the protobuf reader reports a file
        // that is not a SentencePiece model with assorted exception types (IOException subclasses,
        // even NullReferenceException), and callers should see one type that names the file.
        byte[] bytes = File.ReadAllBytes(path);
        try
        {
            return LlamaTokenizer.Create(new MemoryStream(SentencePieceModelPatch.KeepWhitespace(bytes), writable: false), addBeginOfSentence: true, addEndOfSentence: false);
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            throw new ModelFormatException($"{path} is not a SentencePiece tokenizer model: {e.Message}", e);
        }
    }
}
