// Linked into both the generator (netstandard2.0) and the runtime (net10.0), as LlamaArchitecture.cs is: the compiler
// plans each matrix's kernel by the format the file will hold, and the runtime checks a file against that plan, so both
// must answer the same. Keep it to plain C# that compiles for netstandard2.0.

using System;

namespace Llama.Compiled;

/// <summary>
/// A format or mix a model is quantized to. The same values as <c>Llama.Compiled.WeightFormat</c> (the generator does
/// not load the attributes assembly, so it cannot name that enum): cast either way. What
/// <see cref="QuantizationMix.TensorFormat"/> returns is always a single format, never a mix.
/// </summary>
internal enum QuantizationFormat
{
    F32 = 0,
    F16 = 1,
    Q8_0 = 2,
    Q4_0 = 3,
    Q4_1 = 4,
    Q5_0 = 5,
    Q5_1 = 6,
    Q4_K = 7,
    Q5_K = 8,
    Q6_K = 9,
    Q4_K_M = 20,
    Q4_K_S = 21,
    Q5_K_M = 22,
    Q5_K_S = 23,
    MostlyQ4_0 = 30,
    MostlyQ4_1 = 31,
    MostlyQ5_0 = 32,
    MostlyQ5_1 = 33,
}

/// <summary>
/// llama.cpp's per-tensor choice of format (<c>llama_tensor_get_type</c> in src/llama-quant.cpp, as built into
/// LLamaSharp.Backend.Cpu 0.30.0 and checked against it by the oracle tests), for the tensors of a LLaMA-family model.
/// </summary>
/// <remarks>
/// <para>
/// A <b>mix</b> (Q4_K_M, Q4_K_S, Q5_K_M, Q5_K_S) answers exactly what <c>llama-quantize</c> with that file type writes
/// from an F32 or F16 model without an importance matrix: the classifier (and, in a tied model, the token embedding
/// that serves as it) in Q6_K; attn_v and ffn_down in Q6_K in the layers llama.cpp gives more bits (Q4_K_M, Q5_K_M), in
/// Q5_K in the first 4 attn_v and the first eighth of ffn_down (Q4_K_S); attn_v of a 70B model in Q5_K rather than
/// Q4_K; a row width the chosen format does not divide falls back (Q4_K to Q5_0, Q5_K to Q5_1, Q6_K to Q8_0), and to
/// F16 when the fallback does not divide it either.
/// </para>
/// <para>
/// A <b>single format</b> (Q8_0, Q4_0, …, Q4_K, Q6_K) means that format for every matrix whose width it divides, else
/// llama.cpp's fallback chain, else F32 — as <c>llama-quantize --pure</c> writes, except that F32 rather than F16 is
/// the last resort (the compiled F32 kernels are exact; llama.cpp refuses a width a 32-block format does not divide).
/// This is what the compile options have always meant: a Q8_0 model keeps a matrix of width 344 in F32.
/// </para>
/// <para>
/// With <c>asLlamaCppFtype</c>, a single format of llama.cpp's own file types (F32, F16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1,
/// Q6_K) answers what <c>llama-quantize</c> writes for that type instead: the classifier (and a tied token embedding)
/// in Q6_K, or in Q8_0 where Q6_K's 256-blocks do not divide its width, and the Q8_0 type keeps it in Q8_0. Q4_K and Q5_K
/// are no llama.cpp file type (its Q4_K_S and Q5_K_S are the nearest).
/// </para>
/// <para>
/// Where llama.cpp's quantizer refuses a model (a 32-block format for a width 32 does not divide, which its fallback
/// table has no entry for), the mixes and llama.cpp file types answer F16, the format its fallback ends in elsewhere.
/// Vectors (the norms) are never quantized: F32.
/// </para>
/// </remarks>
internal static class QuantizationMix
{
    /// <summary>Weights per block of the 32-block formats (Q8_0, Q4_0, Q4_1, Q5_0, Q5_1).</summary>
    public const int BlockSize = 32;

    /// <summary>Weights per super-block of the K formats (ggml's QK_K).</summary>
    public const int SuperBlockSize = 256;

    /// <summary>The layer count of llama.cpp's 70B models (LLaMA 2/3 70B with grouped-query attention, Qwen2 72B).</summary>
    private const int SeventyBLayerCount = 80;

    /// <summary>
    /// The format llama.cpp's quantizer stores <paramref name="tensor"/> in (see the class remarks for what
    /// <paramref name="requested"/> and <paramref name="asLlamaCppFtype"/> mean).
    /// </summary>
    /// <param name="requested">The format or mix the model is quantized to.</param>
    /// <param name="tensor">The tensor's role.</param>
    /// <param name="layer">The tensor's layer (ignored for the token embedding, the classifier and the final norm).</param>
    /// <param name="layerCount">The model's layer count.</param>
    /// <param name="columns">The tensor's row width (its GGUF <c>ne[0]</c>; the hidden size for the embedding and the classifier).</param>
    /// <param name="gqaRatio">Query heads per key/value head (1 without grouped-query attention).</param>
    /// <param name="tiedEmbeddings">True when the model stores no classifier and reuses the token embedding.</param>
    /// <param name="asLlamaCppFtype">Give a single format llama.cpp's file-type meaning (see the remarks).</param>
    /// <param name="architecture">GGUF <c>general.architecture</c> (config.json <c>model_type</c>): which models llama.cpp counts as 70B.</param>
    /// <exception cref="ArgumentOutOfRangeException">
    /// A layer outside the model, a non-positive count or width, or Q4_K/Q5_K with <paramref name="asLlamaCppFtype"/>.
    /// </exception>
    public static QuantizationFormat TensorFormat(QuantizationFormat requested, LlamaTensor tensor, int layer, int layerCount, int columns,
        int gqaRatio, bool tiedEmbeddings, bool asLlamaCppFtype = false, string architecture = "llama")
    {
        if (layerCount <= 0)
            throw new ArgumentOutOfRangeException(nameof(layerCount), layerCount, "a model has at least one layer");
        if (columns <= 0)
            throw new ArgumentOutOfRangeException(nameof(columns), columns, "a tensor has at least one column");
        if (LlamaArchitecture.IsPerLayer(tensor) && (layer < 0 || layer >= layerCount))
            throw new ArgumentOutOfRangeException(nameof(layer), layer, $"the model has layers 0 to {layerCount - 1}");
        if (IsFileType(requested))
        {
            requested = BaseFormat(requested);
            asLlamaCppFtype = true;
        }
        if (asLlamaCppFtype && requested is QuantizationFormat.Q4_K or QuantizationFormat.Q5_K)
            throw new ArgumentOutOfRangeException(nameof(requested), requested, "llama.cpp has no file type of Q4_K or Q5_K alone; Q4_K_S and Q5_K_S are the nearest");

        if (tensor is LlamaTensor.FinalNorm or LlamaTensor.AttentionNorm or LlamaTensor.FeedForwardNorm)
            return QuantizationFormat.F32;
        if (requested is QuantizationFormat.F32 or QuantizationFormat.F16)
            return requested;
        if (!IsMix(requested) && !asLlamaCppFtype)
            return Fallback(requested, columns, QuantizationFormat.F32);

        QuantizationFormat baseFormat = BaseFormat(requested);
        QuantizationFormat chosen = baseFormat;
        if (tensor == LlamaTensor.Classifier || (tiedEmbeddings && tensor == LlamaTensor.TokenEmbedding))
        {
            // The classifier decides every token: llama.cpp gives it Q6_K whatever the mix, Q8_0 where the base format's
            // blocks do not divide its width (or the base is Q8_0 already).
            chosen = columns % BlockElements(baseFormat) != 0 || baseFormat == QuantizationFormat.Q8_0
                ? QuantizationFormat.Q8_0 : QuantizationFormat.Q6_K;
        }
        else if (tensor == LlamaTensor.Value)
        {
            // llama.cpp counts the attn_v tensors as it visits them, in layer order (its loader sorts blk.N by N).
            if (requested is QuantizationFormat.Q4_K_M or QuantizationFormat.Q5_K_M && UseMoreBits(layer, layerCount))
                chosen = QuantizationFormat.Q6_K;
            else if (requested == QuantizationFormat.Q4_K_S && layer < 4)
                chosen = QuantizationFormat.Q5_K;
            // A 70B model's attn_v is 8× smaller than its attn_q (8 query heads per KV head): more bits cost little.
            if (chosen == QuantizationFormat.Q4_K && IsSeventyB(layerCount, gqaRatio, architecture))
                chosen = QuantizationFormat.Q5_K;
        }
        else if (tensor == LlamaTensor.Down)
        {
            if (requested is QuantizationFormat.Q4_K_M or QuantizationFormat.Q5_K_M && UseMoreBits(layer, layerCount))
                chosen = QuantizationFormat.Q6_K;
            else if (requested == QuantizationFormat.Q4_K_S && layer < layerCount / 8)
                chosen = QuantizationFormat.Q5_K;
        }
        return Fallback(chosen, columns, QuantizationFormat.F16);
    }

    /// <summary>True for Q4_K_M, Q4_K_S, Q5_K_M and Q5_K_S.</summary>
    public static bool IsMix(QuantizationFormat format) => format is >= QuantizationFormat.Q4_K_M and <= QuantizationFormat.Q5_K_S;

    /// <summary>True for MostlyQ4_0, MostlyQ4_1, MostlyQ5_0 and MostlyQ5_1: a single format with llama.cpp's file-type meaning.</summary>
    public static bool IsFileType(QuantizationFormat format) => format >= QuantizationFormat.MostlyQ4_0;

    /// <summary>Weights per block of a single format (1 for F32 and F16).</summary>
    public static int BlockElements(QuantizationFormat format) => format switch
    {
        QuantizationFormat.F32 or QuantizationFormat.F16 => 1,
        QuantizationFormat.Q4_K or QuantizationFormat.Q5_K or QuantizationFormat.Q6_K => SuperBlockSize,
        QuantizationFormat.Q8_0 or QuantizationFormat.Q4_0 or QuantizationFormat.Q4_1 or QuantizationFormat.Q5_0 or QuantizationFormat.Q5_1 => BlockSize,
        _ => throw new ArgumentOutOfRangeException(nameof(format), format, "a mix has no single block size"),
    };

    /// <summary>The format most of a mix's matrices take (llama.cpp's <c>llama_ftype_get_default_type</c>); a single format itself.</summary>
    public static QuantizationFormat BaseFormat(QuantizationFormat format) => format switch
    {
        QuantizationFormat.Q4_K_M or QuantizationFormat.Q4_K_S => QuantizationFormat.Q4_K,
        QuantizationFormat.Q5_K_M or QuantizationFormat.Q5_K_S => QuantizationFormat.Q5_K,
        QuantizationFormat.MostlyQ4_0 => QuantizationFormat.Q4_0,
        QuantizationFormat.MostlyQ4_1 => QuantizationFormat.Q4_1,
        QuantizationFormat.MostlyQ5_0 => QuantizationFormat.Q5_0,
        QuantizationFormat.MostlyQ5_1 => QuantizationFormat.Q5_1,
        _ => format,
    };

    /// <summary>
    /// llama.cpp's <c>use_more_bits</c>: the first and last eighth of the layers and every third layer between get the
    /// larger format in the _M mixes.
    /// </summary>
    public static bool UseMoreBits(int layer, int layerCount) =>
        layer < layerCount / 8 || layer >= 7 * layerCount / 8 || (layer - layerCount / 8) % 3 == 2;

    /// <summary>
    /// llama.cpp's <c>LLM_TYPE_70B</c> among the architectures compiled here: 80 layers, with grouped-query attention for
    /// llama (80 layers without it are LLaMA 1 65B), always for qwen2.
    /// </summary>
    private static bool IsSeventyB(int layerCount, int gqaRatio, string architecture) =>
        layerCount == SeventyBLayerCount && (architecture == "qwen2" || gqaRatio != 1);

    /// <summary>
    /// <paramref name="format"/> where it divides <paramref name="columns"/>, else llama.cpp's fallback for it
    /// (<c>tensor_type_fallback</c>: the 32-block format of about the same bits), else <paramref name="lastResort"/>.
    /// </summary>
    private static QuantizationFormat Fallback(QuantizationFormat format, int columns, QuantizationFormat lastResort)
    {
        if (columns % BlockElements(format) == 0)
            return format;
        QuantizationFormat fallback = format switch
        {
            QuantizationFormat.Q4_K => QuantizationFormat.Q5_0,
            QuantizationFormat.Q5_K => QuantizationFormat.Q5_1,
            QuantizationFormat.Q6_K => QuantizationFormat.Q8_0,
            _ => lastResort,
        };
        return columns % BlockElements(fallback) == 0 ? fallback : lastResort;
    }
}
