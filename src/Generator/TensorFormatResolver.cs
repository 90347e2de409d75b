using System.Collections.Generic;
using Llama.Compiled.Generator.Model;

namespace Llama.Compiled.Generator;

/// <summary>
/// Decides the format of every matrix: a GGUF-compiled model takes what the file stores (no quantized format is ever
/// converted into another: that is lossy and changes results against llama.cpp); a config.json model takes the
/// attribute's format, or, for a mix, what llama.cpp's quantizer would choose for each tensor.
/// </summary>
internal static class TensorFormatResolver
{
    public static TensorFormats Resolve(ComputeFormat requested, ModelSpec s)
    {
        var layers = new List<LayerFormats>(s.LayerCount);
        if (s.StoredFormats is { } stored)
        {
            foreach (LayerFormats layer in stored.Layers)
                layers.Add(layer);
            ComputeFormat classifier = stored.Classifier ?? stored.TokenEmbedding;
            // Rows of the formats the kernels read as stored, and of Q4_K (read back out of its kernel layout, which a tied
            // classifier shares), are dequantized per token; Q8_0 and Q4_0 embeddings are converted to F32 once.
            ComputeFormat embedding = FormatFacts.IsBlockQuantized(stored.TokenEmbedding)
                && (!FormatFacts.InKernelLayout(stored.TokenEmbedding) || stored.TokenEmbedding == ComputeFormat.Q4_K)
                ? stored.TokenEmbedding : ComputeFormat.F32;
            return Uniform(new TensorFormats(embedding, classifier, EquatableArray.From(layers)));
        }

        for (int layer = 0; layer < s.LayerCount; layer++)
        {
            layers.Add(new LayerFormats(
                For(requested, LlamaTensor.Query, layer, s.HiddenSize, s),
                For(requested, LlamaTensor.Key, layer, s.HiddenSize, s),
                For(requested, LlamaTensor.Value, layer, s.HiddenSize, s),
                For(requested, LlamaTensor.AttentionOutput, layer, s.QueryDim, s),
                For(requested, LlamaTensor.Gate, layer, s.HiddenSize, s),
                For(requested, LlamaTensor.Up, layer, s.HiddenSize, s),
                For(requested, LlamaTensor.Down, layer, s.IntermediateSize, s)));
        }
        // Safetensors embeddings are looked up as F32 (converted once at load when stored otherwise).
        return new TensorFormats(ComputeFormat.F32, For(requested, LlamaTensor.Classifier, -1, s.HiddenSize, s), EquatableArray.From(layers));
    }

    /// <summary>llama.cpp's choice for one tensor (<see cref="QuantizationMix"/>); the MostlyQ* formats are llama.cpp's file types.</summary>
    private static ComputeFormat For(ComputeFormat requested, LlamaTensor tensor, int layer, int cols, ModelSpec s) =>
        QuantizationMix.TensorFormat(requested, tensor, layer, s.LayerCount, cols, s.GroupSize, s.TiedEmbeddings, architecture: s.ModelType);

    /// <summary>
    /// A matrix role whose layers mix F32 with other formats computes in F32 in every layer (the exact conversion), so
    /// that one field type and one kernel family serve the role.
    /// </summary>
    private static TensorFormats Uniform(TensorFormats formats)
    {
        bool Mixed(System.Func<LayerFormats, ComputeFormat> role)
        {
            bool f32 = false, other = false;
            foreach (LayerFormats layer in formats.Layers)
            {
                f32 |= role(layer) == ComputeFormat.F32;
                other |= role(layer) != ComputeFormat.F32;
            }
            return f32 && other;
        }

        ComputeFormat Pick(bool mixed, ComputeFormat format) => mixed ? ComputeFormat.F32 : format;
        bool q = Mixed(l => l.Query), k = Mixed(l => l.Key), v = Mixed(l => l.Value), o = Mixed(l => l.Output);
        bool gate = Mixed(l => l.Gate), up = Mixed(l => l.Up), down = Mixed(l => l.Down);
        var layers = new List<LayerFormats>();
        foreach (LayerFormats l in formats.Layers)
            layers.Add(new LayerFormats(Pick(q, l.Query), Pick(k, l.Key), Pick(v, l.Value), Pick(o, l.Output), Pick(gate, l.Gate), Pick(up, l.Up), Pick(down, l.Down)));
        return formats with { Layers = EquatableArray.From(layers) };
    }
}
