using System;
using System.Collections.Generic;
using System.Globalization;

namespace Llama.Compiled;

/// <summary>
/// What a GGUF file means for a LLaMA-family model: its tensor names in Hugging Face terms, the RoPE
/// layout its architecture implies, and its hyperparameters checked against the compiled shape.
/// </summary>
internal static class GgufModel
{
    /// <summary>
    /// The Hugging Face name of GGUF tensor <paramref name="ggufName"/> (<c>blk.3.ffn_gate.weight</c> →
    /// <c>model.layers.3.mlp.gate_proj.weight</c>); names without an equivalent are returned unchanged so
    /// that <see cref="ModelWeights.ThrowIfUnusedTensors"/> reports them as they are in the file.
    /// </summary>
    public static string HuggingFaceName(string ggufName)
    {
        if (s_globalNames.TryGetValue(ggufName, out string? global))
            return global;
        if (!ggufName.StartsWith("blk.", StringComparison.Ordinal))
            return ggufName;
        int dot = ggufName.IndexOf('.', 4);
        if (dot < 0)
            return ggufName;
        ReadOnlySpan<char> number = ggufName.AsSpan(4, dot - 4);
        // Only canonical layer numbers ("0", "17"; not "007" or "+1") map, so distinct names stay distinct.
        if (!int.TryParse(number, NumberStyles.None, CultureInfo.InvariantCulture, out int layer)
            || !number.SequenceEqual(layer.ToString(CultureInfo.InvariantCulture)))
            return ggufName;
        return s_layerNames.TryGetValue(ggufName[(dot + 1)..], out string? suffix)
            ? LlamaArchitecture.HuggingFaceLayerPrefix(layer) + suffix
            : ggufName;
    }

    /// <summary>GGUF → Hugging Face names of the tensors outside the layers (from the architecture table).</summary>
    private static readonly Dictionary<string, string> s_globalNames = new(StringComparer.Ordinal)
    {
        [LlamaArchitecture.GgufName(LlamaTensor.TokenEmbedding)] = LlamaArchitecture.HuggingFaceName(LlamaTensor.TokenEmbedding),
        [LlamaArchitecture.GgufName(LlamaTensor.FinalNorm)] = LlamaArchitecture.HuggingFaceName(LlamaTensor.FinalNorm),
        [LlamaArchitecture.GgufName(LlamaTensor.Classifier)] = LlamaArchitecture.HuggingFaceName(LlamaTensor.Classifier),
    };

    /// <summary>GGUF → Hugging Face names of a layer's weights and bias vectors, without the layer prefix.</summary>
    private static readonly Dictionary<string, string> s_layerNames = LayerNames();

    private static Dictionary<string, string> LayerNames()
    {
        var names = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (LlamaTensor tensor in LlamaArchitecture.LayerTensors)
        {
            names[LlamaArchitecture.GgufStem(tensor) + ".weight"] = LlamaArchitecture.HuggingFaceStem(tensor) + ".weight";
            names[LlamaArchitecture.GgufStem(tensor) + ".bias"] = LlamaArchitecture.HuggingFaceStem(tensor) + ".bias";
        }
        return names;
    }

    /// <summary>
    /// llama.cpp's converter permutes the q/k rows of <c>llama</c>/<c>mistral</c> models so RoPE rotates adjacent
    /// pairs; <c>qwen2</c> keeps the Hugging Face order (llama.cpp's NEOX rotation, pairs (j, j + d/2)).
    /// </summary>
    public static RopeLayout RopeLayoutOf(GgufMetadata metadata)
    {
        string? arch = metadata.Architecture;
        if (arch is null)
            throw new ModelFormatException($"{metadata.Source}: the GGUF file has no general.architecture");
        if (Array.IndexOf(LlamaArchitecture.ModelTypes, arch) < 0)
            throw new ModelFormatException($"{metadata.Source}: unsupported architecture {arch} (general.architecture); supported: {string.Join(", ", LlamaArchitecture.ModelTypes)}");
        return LlamaArchitecture.GgufRotatesAdjacentPairs(arch) ? RopeLayout.AdjacentPairs : RopeLayout.RotateHalf;
    }

    /// <summary>
    /// Checks the hyperparameters the file stores against <paramref name="shape"/>; keys the file lacks are
    /// not checked (the tensor shapes still are, when the model requests them).
    /// </summary>
    public static void CheckHyperparameters(GgufMetadata metadata, LlamaModelShape shape)
    {
        string arch = metadata.Architecture ?? throw new ModelFormatException($"{metadata.Source}: the GGUF file has no general.architecture");
        Expect(metadata, $"{arch}.embedding_length", shape.HiddenSize);
        Expect(metadata, $"{arch}.block_count", shape.LayerCount);
        Expect(metadata, $"{arch}.feed_forward_length", shape.IntermediateSize);
        Expect(metadata, $"{arch}.attention.head_count", shape.HeadCount);
        Expect(metadata, $"{arch}.attention.head_count_kv", shape.KvHeadCount);
        Expect(metadata, $"{arch}.rope.dimension_count", shape.HeadDim);

        string vocabKey = $"{arch}.vocab_size";
        if (metadata.ContainsKey(vocabKey))
            Expect(metadata, vocabKey, shape.VocabSize);
        else if (metadata.GetStringArray("tokenizer.ggml.tokens") is string[] tokens)
            Hyperparameters.Check(metadata.Source, "tokenizer.ggml.tokens (number of tokens)", shape.VocabSize, tokens.Length);

        string contextKey = $"{arch}.context_length";
        if (metadata.GetInteger(contextKey) is long context && context < shape.MaxContext)
            Hyperparameters.CheckContext(metadata.Source, contextKey, shape.MaxContext, context);

        string thetaKey = $"{arch}.rope.freq_base";
        if (metadata.GetFloat(thetaKey) is double theta)
            Hyperparameters.CheckFloat(metadata.Source, thetaKey, shape.RopeTheta, theta);
    }

    private static void Expect(GgufMetadata metadata, string key, long expected)
    {
        if (metadata.GetInteger(key) is long actual)
            Hyperparameters.Check(metadata.Source, key, expected, actual);
    }
}

/// <summary>The message every hyperparameter mismatch uses.</summary>
internal static class Hyperparameters
{
    public static void Check(string source, string key, long expected, long actual)
    {
        if (expected != actual)
            throw new ModelFormatException($"{source}: {key}: compiled model expects {expected}, file has {actual}");
    }

    public static void CheckContext(string source, string key, long maxContext, long actual)
    {
        if (actual < maxContext)
            throw new ModelFormatException($"{source}: {key}: compiled model expects at least {maxContext} (its MaxContext), file has {actual}");
    }

    /// <summary>Floats are compared with a relative tolerance: config.json and the file may round differently.</summary>
    public static void CheckFloat(string source, string key, double expected, double actual)
    {
        if (!(Math.Abs(expected - actual) <= 1e-5 * Math.Max(Math.Abs(expected), Math.Abs(actual))))
            throw new ModelFormatException($"{source}: {key}: compiled model expects {expected.ToString("R", CultureInfo.InvariantCulture)}, file has {actual.ToString("R", CultureInfo.InvariantCulture)}");
    }
}
