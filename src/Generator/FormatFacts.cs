using Llama.Compiled.Generator.Model;

namespace Llama.Compiled.Generator;

/// <summary>How the activations of a matrix product are prepared for the weights' format.</summary>
internal enum ActivationKind
{
    /// <summary>F32 and F16 weights read the floats as they are.</summary>
    Floats,

    /// <summary>Q8_0, Q4_0 and Q5_0 read int8 blocks of 32 with an F16 scale and the integer sum each (llama.cpp's Q8_0).</summary>
    Q8_0,

    /// <summary>Q4_1 and Q5_1 read the same int8 blocks with F16(d·Σq) for their minimums (llama.cpp's Q8_1).</summary>
    Q8_1,

    /// <summary>The K formats read int8 super-blocks of 256 with an F32 scale and the sums of each 16 (llama.cpp's Q8_K).</summary>
    Q8_K,
}

/// <summary>Sizes and kinds of the compute formats, as the planner and the emitters need them.</summary>
internal static class FormatFacts
{
    /// <summary>Weights per block of a K format.</summary>
    public const int SuperBlock = 256;

    /// <summary>Int8 activations per sum of a Q8_K super-block.</summary>
    public const int SuperBlockSumWidth = 16;

    public static bool IsBlockQuantized(ComputeFormat format) => format is not (ComputeFormat.F32 or ComputeFormat.F16);

    /// <summary>
    /// Q8_0, Q4_0 and Q4_K matrices are rearranged at load into a layout the generated group products read (groups of
    /// 8 interleaved rows); the other block formats are read as the file stores them, by the runtime's row products.
    /// </summary>
    public static bool InKernelLayout(ComputeFormat format) => format is ComputeFormat.Q8_0 or ComputeFormat.Q4_0 or ComputeFormat.Q4_K;

    public static ActivationKind Activations(ComputeFormat format) => format switch
    {
        ComputeFormat.F32 or ComputeFormat.F16 => ActivationKind.Floats,
        ComputeFormat.Q4_K or ComputeFormat.Q5_K or ComputeFormat.Q6_K => ActivationKind.Q8_K,
        ComputeFormat.Q4_1 or ComputeFormat.Q5_1 => ActivationKind.Q8_1,
        _ => ActivationKind.Q8_0,
    };

    /// <summary>Weights per block: 1 for the float formats.</summary>
    public static int BlockWeights(ComputeFormat format) => format switch
    {
        ComputeFormat.F32 or ComputeFormat.F16 => 1,
        ComputeFormat.Q4_K or ComputeFormat.Q5_K or ComputeFormat.Q6_K => SuperBlock,
        _ => LlamaArchitecture.QuantBlockSize,
    };

    /// <summary>Bytes per block (per weight for the float formats), as llama.cpp stores them.</summary>
    public static int BlockBytes(ComputeFormat format) => format switch
    {
        ComputeFormat.F32 => 4,
        ComputeFormat.F16 => 2,
        ComputeFormat.Q8_0 => LlamaArchitecture.Q8_0BlockBytes,
        ComputeFormat.Q4_0 => LlamaArchitecture.Q4_0BlockBytes,
        ComputeFormat.Q4_1 => 20,
        ComputeFormat.Q5_0 => 22,
        ComputeFormat.Q5_1 => 24,
        ComputeFormat.Q4_K => 144,
        ComputeFormat.Q5_K => 176,
        _ => 210, // Q6_K
    };

    /// <summary>True when rows of <paramref name="cols"/> weights split into whole blocks of the format.</summary>
    public static bool Fits(ComputeFormat format, int cols) => cols % BlockWeights(format) == 0;

    public static long RowBytes(ComputeFormat format, int cols) => (long)cols / BlockWeights(format) * BlockBytes(format);

    /// <summary>The runtime's WeightFormat member for a compute format (same names).</summary>
    public static string WeightFormatName(ComputeFormat format) => "WeightFormat." + format;
}
