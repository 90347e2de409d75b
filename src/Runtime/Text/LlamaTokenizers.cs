using System;
using System.Collections.Generic;
using System.IO;
using Microsoft.ML.Tokenizers;

namespace Llama.Compiled;

/// <summary>Loads the tokenizer that sits beside a model, or the one a GGUF file carries.</summary>
public static class LlamaTokenizers
{
    /// <summary>The SentencePiece tokenizer file looked for in the model's folder (Llama 2, TinyLlama, stories).</summary>
    public const string FileName = "tokenizer.model";

    /// <summary>The Hugging Face tokenizer file looked for in the model's folder (Llama 3.x, Qwen2/2.5/3, SmolLM2).</summary>
    public const string HuggingFaceFileName = "tokenizer.json";

    /// <summary>
    /// Reads the tokenizer of the model at <paramref name="modelPath"/>:
    /// <list type="bullet">
    /// <item>a <c>.gguf</c> file: the vocabulary in its metadata, SentencePiece (<c>tokenizer.ggml.model = "llama"</c>) or
    /// byte-level BPE (<c>"gpt2"</c>, with the pre-tokenizer that <c>tokenizer.ggml.pre</c> names);</item>
    /// <item>a <c>tokenizer.json</c> (the file itself, or in the folder): a <see cref="ByteLevelBpeTokenizer"/>, with the
    /// pre-tokenizer's regular expressions as the file writes them, its normalizer, its added tokens, BOS as the
    /// post-processor (or <c>add_bos_token</c> of the <c>tokenizer_config.json</c> beside it) says;</item>
    /// <item>otherwise the folder's <c>tokenizer.model</c> (SentencePiece), encoding with BOS and no EOS, as Llama expects.</item>
    /// </list>
    /// A folder with both files uses <c>tokenizer.json</c> only when it is byte-level; a SentencePiece-style
    /// <c>tokenizer.json</c> beside a <c>tokenizer.model</c> leaves the choice to the <c>.model</c>.
    /// </summary>
    /// <param name="modelPath">The model's folder, a file in it (the weights), a <c>tokenizer.json</c>, or a <c>.gguf</c> file.</param>
    /// <exception cref="FileNotFoundException">There is no tokenizer where it was looked for; the message names the paths.</exception>
    /// <exception cref="ModelFormatException">The file is malformed or of a kind not supported (the message says which).</exception>
    public static Tokenizer Load(string modelPath)
    {
        ArgumentException.ThrowIfNullOrEmpty(modelPath);
        // A GGUF file carries its vocabulary: it alone is enough to generate text.
        if (File.Exists(modelPath) && modelPath.EndsWith(".gguf", StringComparison.OrdinalIgnoreCase))
            return GgufTokenizer.Load(modelPath);
        if (File.Exists(modelPath) && modelPath.EndsWith(".json", StringComparison.OrdinalIgnoreCase))
            return LoadTokenizerJson(Path.GetFullPath(modelPath));
        string folder = Directory.Exists(modelPath)
            ? modelPath
            : Path.GetDirectoryName(Path.GetFullPath(modelPath)) ?? modelPath;
        string path = Path.GetFullPath(Path.Combine(folder, FileName));
        string jsonPath = Path.GetFullPath(Path.Combine(folder, HuggingFaceFileName));
        if (File.Exists(jsonPath) && !File.Exists(path))
            return LoadTokenizerJson(jsonPath);
        if (!File.Exists(path))
            throw new FileNotFoundException($"Tokenizer not found: neither {path} nor {jsonPath} exists", path);

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

    /// <summary>Reads a byte-level BPE <c>tokenizer.json</c> (and the <c>tokenizer_config.json</c> beside it, when there is one).</summary>
    /// <exception cref="FileNotFoundException">The file does not exist.</exception>
    /// <exception cref="ModelFormatException">The file is malformed or not a byte-level BPE tokenizer.</exception>
    public static ByteLevelBpeTokenizer LoadTokenizerJson(string path)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        if (!File.Exists(path))
            throw new FileNotFoundException($"Tokenizer not found: {Path.GetFullPath(path)}", path);
        return new ByteLevelBpeTokenizer(HuggingFaceTokenizerJson.Read(path));
    }

    /// <summary>
    /// Encodes <paramref name="text"/> without the tokens a tokenizer adds around a text (BOS, EOS), for any tokenizer
    /// <see cref="Load"/> returns: transformers' <c>add_special_tokens=False</c>. Text that spells an added token
    /// (<c>&lt;|im_start|&gt;</c>) still becomes that token with a byte-level tokenizer.
    /// </summary>
    public static IReadOnlyList<int> EncodeWithoutSpecialTokens(Tokenizer tokenizer, ReadOnlySpan<char> text)
    {
        ArgumentNullException.ThrowIfNull(tokenizer);
        return tokenizer switch
        {
            ByteLevelBpeTokenizer byteLevel => byteLevel.EncodeToIds(text.ToString(), addSpecialTokens: false),
            SentencePieceTokenizer sentencePiece => sentencePiece.EncodeToIds(text, addBeginningOfSentence: false, addEndOfSentence: false),
            _ => tokenizer.EncodeToIds(text),
        };
    }
}
