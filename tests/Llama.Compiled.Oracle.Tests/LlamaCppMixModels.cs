using System;
using System.Collections.Generic;
using LLama.Native;

namespace Llama.Compiled.Oracle.Tests;

// The random-weight shapes compiled in llama.cpp's quantization mixes, for the files llama.cpp's own quantizer writes
// (LlamaCppQuantizedFiles): each class expects exactly the per-tensor formats llama-quantize chooses.

// gqa2-hd64-ffn768-l4-untied: GQA 2, untied, 4 layers, every width a multiple of 256: llama.cpp's Q4_K_M gives layers 2 and 3 Q6_K attn_v/ffn_down.
[LlamaModel("Models/gqa2-hd64-ffn768-l4-untied/config.json", Weights = WeightFormat.Q4_K_M)]
public partial class Gqa2Hd64Ffn768L4UntiedQ4KMMix;

[LlamaModel("Models/gqa2-hd64-ffn768-l4-untied/config.json", Weights = WeightFormat.Q4_K_S)]
public partial class Gqa2Hd64Ffn768L4UntiedQ4KSMix;

[LlamaModel("Models/gqa2-hd64-ffn768-l4-untied/config.json", Weights = WeightFormat.Q5_K_M)]
public partial class Gqa2Hd64Ffn768L4UntiedQ5KMMix;

[LlamaModel("Models/gqa2-hd64-ffn768-l4-untied/config.json", Weights = WeightFormat.Q6_K)]
public partial class Gqa2Hd64Ffn768L4UntiedQ6KMix;

[LlamaModel("Models/gqa2-hd64-ffn768-l4-untied/config.json", Weights = WeightFormat.Q8_0)]
public partial class Gqa2Hd64Ffn768L4UntiedQ8Mix;

[LlamaModel("Models/gqa2-hd64-ffn768-l4-untied/config.json", Weights = WeightFormat.MostlyQ4_0)]
public partial class Gqa2Hd64Ffn768L4UntiedMostlyQ4Mix;

// gqa4-hd64-h1024-v32000-tied: GQA 4, tied (the classifier is the Q6_K token embedding), widths 1024.
[LlamaModel("Models/gqa4-hd64-h1024-v32000-tied/config.json", Weights = WeightFormat.Q4_K_M)]
public partial class Gqa4Hd64H1024V32000TiedQ4KMMix;

[LlamaModel("Models/gqa4-hd64-h1024-v32000-tied/config.json", Weights = WeightFormat.Q4_K_S)]
public partial class Gqa4Hd64H1024V32000TiedQ4KSMix;

[LlamaModel("Models/gqa4-hd64-h1024-v32000-tied/config.json", Weights = WeightFormat.Q5_K_M)]
public partial class Gqa4Hd64H1024V32000TiedQ5KMMix;

[LlamaModel("Models/gqa4-hd64-h1024-v32000-tied/config.json", Weights = WeightFormat.Q6_K)]
public partial class Gqa4Hd64H1024V32000TiedQ6KMix;

[LlamaModel("Models/gqa4-hd64-h1024-v32000-tied/config.json", Weights = WeightFormat.Q8_0)]
public partial class Gqa4Hd64H1024V32000TiedQ8Mix;

[LlamaModel("Models/gqa4-hd64-h1024-v32000-tied/config.json", Weights = WeightFormat.MostlyQ4_0)]
public partial class Gqa4Hd64H1024V32000TiedMostlyQ4Mix;

// gqa8-hd64-untied: GQA 8, untied, widths 512 and 1024.
[LlamaModel("Models/gqa8-hd64-untied/config.json", Weights = WeightFormat.Q4_K_M)]
public partial class Gqa8Hd64UntiedQ4KMMix;

[LlamaModel("Models/gqa8-hd64-untied/config.json", Weights = WeightFormat.Q4_K_S)]
public partial class Gqa8Hd64UntiedQ4KSMix;

[LlamaModel("Models/gqa8-hd64-untied/config.json", Weights = WeightFormat.Q5_K_M)]
public partial class Gqa8Hd64UntiedQ5KMMix;

[LlamaModel("Models/gqa8-hd64-untied/config.json", Weights = WeightFormat.Q6_K)]
public partial class Gqa8Hd64UntiedQ6KMix;

[LlamaModel("Models/gqa8-hd64-untied/config.json", Weights = WeightFormat.Q8_0)]
public partial class Gqa8Hd64UntiedQ8Mix;

[LlamaModel("Models/gqa8-hd64-untied/config.json", Weights = WeightFormat.MostlyQ4_0)]
public partial class Gqa8Hd64UntiedMostlyQ4Mix;

// gqa3-hd32-h288-ffn928-untied: widths 288 and 928, not multiples of 256: llama.cpp falls back to Q5_0, Q5_1 and Q8_0.
[LlamaModel("Models/gqa3-hd32-h288-ffn928-untied/config.json", Weights = WeightFormat.Q4_K_M)]
public partial class Gqa3Hd32H288Ffn928UntiedQ4KMMix;

[LlamaModel("Models/gqa3-hd32-h288-ffn928-untied/config.json", Weights = WeightFormat.Q4_K_S)]
public partial class Gqa3Hd32H288Ffn928UntiedQ4KSMix;

[LlamaModel("Models/gqa3-hd32-h288-ffn928-untied/config.json", Weights = WeightFormat.Q5_K_M)]
public partial class Gqa3Hd32H288Ffn928UntiedQ5KMMix;

[LlamaModel("Models/gqa3-hd32-h288-ffn928-untied/config.json", Weights = WeightFormat.Q6_K)]
public partial class Gqa3Hd32H288Ffn928UntiedQ6KMix;

[LlamaModel("Models/gqa3-hd32-h288-ffn928-untied/config.json", Weights = WeightFormat.Q8_0)]
public partial class Gqa3Hd32H288Ffn928UntiedQ8Mix;

[LlamaModel("Models/gqa3-hd32-h288-ffn928-untied/config.json", Weights = WeightFormat.MostlyQ4_0)]
public partial class Gqa3Hd32H288Ffn928UntiedMostlyQ4Mix;

// qwen2-gqa2-h256-ffn768-biases: qwen2 with q/k/v biases (F32 vectors in every mix), untied, 4 layers, every width a multiple of 256.
[LlamaModel("Models/qwen2-gqa2-h256-ffn768-biases/config.json", Weights = WeightFormat.Q4_K_M)]
public partial class Qwen2Gqa2H256Ffn768BiasesQ4KMMix;

[LlamaModel("Models/qwen2-gqa2-h256-ffn768-biases/config.json", Weights = WeightFormat.Q4_K_S)]
public partial class Qwen2Gqa2H256Ffn768BiasesQ4KSMix;

[LlamaModel("Models/qwen2-gqa2-h256-ffn768-biases/config.json", Weights = WeightFormat.Q5_K_M)]
public partial class Qwen2Gqa2H256Ffn768BiasesQ5KMMix;

[LlamaModel("Models/qwen2-gqa2-h256-ffn768-biases/config.json", Weights = WeightFormat.Q6_K)]
public partial class Qwen2Gqa2H256Ffn768BiasesQ6KMix;

[LlamaModel("Models/qwen2-gqa2-h256-ffn768-biases/config.json", Weights = WeightFormat.Q8_0)]
public partial class Qwen2Gqa2H256Ffn768BiasesQ8Mix;

[LlamaModel("Models/qwen2-gqa2-h256-ffn768-biases/config.json", Weights = WeightFormat.MostlyQ4_0)]
public partial class Qwen2Gqa2H256Ffn768BiasesMostlyQ4Mix;

// qwen2-gqa7-h896-ffn4864-l2-tied: qwen2 at Qwen2.5-0.5B's widths, tied: the 896-wide rows fall back from K formats to Q5_0, Q5_1 and Q8_0.
[LlamaModel("Models/qwen2-gqa7-h896-ffn4864-l2-tied/config.json", Weights = WeightFormat.Q4_K_M)]
public partial class Qwen2Gqa7H896Ffn4864L2TiedQ4KMMix;

[LlamaModel("Models/qwen2-gqa7-h896-ffn4864-l2-tied/config.json", Weights = WeightFormat.Q4_K_S)]
public partial class Qwen2Gqa7H896Ffn4864L2TiedQ4KSMix;

[LlamaModel("Models/qwen2-gqa7-h896-ffn4864-l2-tied/config.json", Weights = WeightFormat.Q5_K_M)]
public partial class Qwen2Gqa7H896Ffn4864L2TiedQ5KMMix;

[LlamaModel("Models/qwen2-gqa7-h896-ffn4864-l2-tied/config.json", Weights = WeightFormat.Q6_K)]
public partial class Qwen2Gqa7H896Ffn4864L2TiedQ6KMix;

[LlamaModel("Models/qwen2-gqa7-h896-ffn4864-l2-tied/config.json", Weights = WeightFormat.Q8_0)]
public partial class Qwen2Gqa7H896Ffn4864L2TiedQ8Mix;

[LlamaModel("Models/qwen2-gqa7-h896-ffn4864-l2-tied/config.json", Weights = WeightFormat.MostlyQ4_0)]
public partial class Qwen2Gqa7H896Ffn4864L2TiedMostlyQ4Mix;

// Q5_K_S and llama.cpp's Q4_1 file type (Q4_1 matrices with Q8_1 activations; a Q6_K or Q8_0 classifier).
[LlamaModel("Models/gqa2-hd64-ffn768-l4-untied/config.json", Weights = WeightFormat.Q5_K_S)]
public partial class Gqa2Hd64Ffn768L4UntiedQ5KSMix;

[LlamaModel("Models/gqa2-hd64-ffn768-l4-untied/config.json", Weights = WeightFormat.MostlyQ4_1)]
public partial class Gqa2Hd64Ffn768L4UntiedMostlyQ41Mix;

[LlamaModel("Models/gqa4-hd64-h1024-v32000-tied/config.json", Weights = WeightFormat.Q5_K_S)]
public partial class Gqa4Hd64H1024V32000TiedQ5KSMix;

[LlamaModel("Models/gqa4-hd64-h1024-v32000-tied/config.json", Weights = WeightFormat.MostlyQ4_1)]
public partial class Gqa4Hd64H1024V32000TiedMostlyQ41Mix;

[LlamaModel("Models/gqa8-hd64-untied/config.json", Weights = WeightFormat.Q5_K_S)]
public partial class Gqa8Hd64UntiedQ5KSMix;

[LlamaModel("Models/gqa8-hd64-untied/config.json", Weights = WeightFormat.MostlyQ4_1)]
public partial class Gqa8Hd64UntiedMostlyQ41Mix;

[LlamaModel("Models/gqa3-hd32-h288-ffn928-untied/config.json", Weights = WeightFormat.Q5_K_S)]
public partial class Gqa3Hd32H288Ffn928UntiedQ5KSMix;

[LlamaModel("Models/gqa3-hd32-h288-ffn928-untied/config.json", Weights = WeightFormat.MostlyQ4_1)]
public partial class Gqa3Hd32H288Ffn928UntiedMostlyQ41Mix;

[LlamaModel("Models/qwen2-gqa2-h256-ffn768-biases/config.json", Weights = WeightFormat.Q5_K_S)]
public partial class Qwen2Gqa2H256Ffn768BiasesQ5KSMix;

[LlamaModel("Models/qwen2-gqa2-h256-ffn768-biases/config.json", Weights = WeightFormat.MostlyQ4_1)]
public partial class Qwen2Gqa2H256Ffn768BiasesMostlyQ41Mix;

[LlamaModel("Models/qwen2-gqa7-h896-ffn4864-l2-tied/config.json", Weights = WeightFormat.Q5_K_S)]
public partial class Qwen2Gqa7H896Ffn4864L2TiedQ5KSMix;

[LlamaModel("Models/qwen2-gqa7-h896-ffn4864-l2-tied/config.json", Weights = WeightFormat.MostlyQ4_1)]
public partial class Qwen2Gqa7H896Ffn4864L2TiedMostlyQ41Mix;

/// <summary>The mix classes by shape and llama.cpp file type.</summary>
public static class LlamaCppMixModels
{
    /// <summary>llama-quantize's file types and the WeightFormat that compiles the formats it writes.</summary>
    public static IReadOnlyDictionary<LLamaFtype, WeightFormat> Formats { get; } = new Dictionary<LLamaFtype, WeightFormat>
    {
        [LLamaFtype.MOSTLY_Q4_K_M] = WeightFormat.Q4_K_M,
        [LLamaFtype.MOSTLY_Q4_K_S] = WeightFormat.Q4_K_S,
        [LLamaFtype.MOSTLY_Q5_K_M] = WeightFormat.Q5_K_M,
        [LLamaFtype.MOSTLY_Q6_K] = WeightFormat.Q6_K,
        [LLamaFtype.MOSTLY_Q8_0] = WeightFormat.Q8_0,
        [LLamaFtype.MOSTLY_Q4_0] = WeightFormat.MostlyQ4_0,
        [LLamaFtype.MOSTLY_Q5_K_S] = WeightFormat.Q5_K_S,
        [LLamaFtype.MOSTLY_Q4_1] = WeightFormat.MostlyQ4_1,
    };

    public static IReadOnlyDictionary<(string Shape, WeightFormat Format), Func<string, ILlamaModel>> Loaders { get; } = new Dictionary<(string, WeightFormat), Func<string, ILlamaModel>>
    {
        [("gqa2-hd64-ffn768-l4-untied", WeightFormat.Q4_K_M)] = path => Gqa2Hd64Ffn768L4UntiedQ4KMMix.Load(path),
        [("gqa2-hd64-ffn768-l4-untied", WeightFormat.Q4_K_S)] = path => Gqa2Hd64Ffn768L4UntiedQ4KSMix.Load(path),
        [("gqa2-hd64-ffn768-l4-untied", WeightFormat.Q5_K_M)] = path => Gqa2Hd64Ffn768L4UntiedQ5KMMix.Load(path),
        [("gqa2-hd64-ffn768-l4-untied", WeightFormat.Q6_K)] = path => Gqa2Hd64Ffn768L4UntiedQ6KMix.Load(path),
        [("gqa2-hd64-ffn768-l4-untied", WeightFormat.Q8_0)] = path => Gqa2Hd64Ffn768L4UntiedQ8Mix.Load(path),
        [("gqa2-hd64-ffn768-l4-untied", WeightFormat.MostlyQ4_0)] = path => Gqa2Hd64Ffn768L4UntiedMostlyQ4Mix.Load(path),
        [("gqa4-hd64-h1024-v32000-tied", WeightFormat.Q4_K_M)] = path => Gqa4Hd64H1024V32000TiedQ4KMMix.Load(path),
        [("gqa4-hd64-h1024-v32000-tied", WeightFormat.Q4_K_S)] = path => Gqa4Hd64H1024V32000TiedQ4KSMix.Load(path),
        [("gqa4-hd64-h1024-v32000-tied", WeightFormat.Q5_K_M)] = path => Gqa4Hd64H1024V32000TiedQ5KMMix.Load(path),
        [("gqa4-hd64-h1024-v32000-tied", WeightFormat.Q6_K)] = path => Gqa4Hd64H1024V32000TiedQ6KMix.Load(path),
        [("gqa4-hd64-h1024-v32000-tied", WeightFormat.Q8_0)] = path => Gqa4Hd64H1024V32000TiedQ8Mix.Load(path),
        [("gqa4-hd64-h1024-v32000-tied", WeightFormat.MostlyQ4_0)] = path => Gqa4Hd64H1024V32000TiedMostlyQ4Mix.Load(path),
        [("gqa8-hd64-untied", WeightFormat.Q4_K_M)] = path => Gqa8Hd64UntiedQ4KMMix.Load(path),
        [("gqa8-hd64-untied", WeightFormat.Q4_K_S)] = path => Gqa8Hd64UntiedQ4KSMix.Load(path),
        [("gqa8-hd64-untied", WeightFormat.Q5_K_M)] = path => Gqa8Hd64UntiedQ5KMMix.Load(path),
        [("gqa8-hd64-untied", WeightFormat.Q6_K)] = path => Gqa8Hd64UntiedQ6KMix.Load(path),
        [("gqa8-hd64-untied", WeightFormat.Q8_0)] = path => Gqa8Hd64UntiedQ8Mix.Load(path),
        [("gqa8-hd64-untied", WeightFormat.MostlyQ4_0)] = path => Gqa8Hd64UntiedMostlyQ4Mix.Load(path),
        [("gqa3-hd32-h288-ffn928-untied", WeightFormat.Q4_K_M)] = path => Gqa3Hd32H288Ffn928UntiedQ4KMMix.Load(path),
        [("gqa3-hd32-h288-ffn928-untied", WeightFormat.Q4_K_S)] = path => Gqa3Hd32H288Ffn928UntiedQ4KSMix.Load(path),
        [("gqa3-hd32-h288-ffn928-untied", WeightFormat.Q5_K_M)] = path => Gqa3Hd32H288Ffn928UntiedQ5KMMix.Load(path),
        [("gqa3-hd32-h288-ffn928-untied", WeightFormat.Q6_K)] = path => Gqa3Hd32H288Ffn928UntiedQ6KMix.Load(path),
        [("gqa3-hd32-h288-ffn928-untied", WeightFormat.Q8_0)] = path => Gqa3Hd32H288Ffn928UntiedQ8Mix.Load(path),
        [("gqa3-hd32-h288-ffn928-untied", WeightFormat.MostlyQ4_0)] = path => Gqa3Hd32H288Ffn928UntiedMostlyQ4Mix.Load(path),
        [("qwen2-gqa2-h256-ffn768-biases", WeightFormat.Q4_K_M)] = path => Qwen2Gqa2H256Ffn768BiasesQ4KMMix.Load(path),
        [("qwen2-gqa2-h256-ffn768-biases", WeightFormat.Q4_K_S)] = path => Qwen2Gqa2H256Ffn768BiasesQ4KSMix.Load(path),
        [("qwen2-gqa2-h256-ffn768-biases", WeightFormat.Q5_K_M)] = path => Qwen2Gqa2H256Ffn768BiasesQ5KMMix.Load(path),
        [("qwen2-gqa2-h256-ffn768-biases", WeightFormat.Q6_K)] = path => Qwen2Gqa2H256Ffn768BiasesQ6KMix.Load(path),
        [("qwen2-gqa2-h256-ffn768-biases", WeightFormat.Q8_0)] = path => Qwen2Gqa2H256Ffn768BiasesQ8Mix.Load(path),
        [("qwen2-gqa2-h256-ffn768-biases", WeightFormat.MostlyQ4_0)] = path => Qwen2Gqa2H256Ffn768BiasesMostlyQ4Mix.Load(path),
        [("qwen2-gqa7-h896-ffn4864-l2-tied", WeightFormat.Q4_K_M)] = path => Qwen2Gqa7H896Ffn4864L2TiedQ4KMMix.Load(path),
        [("qwen2-gqa7-h896-ffn4864-l2-tied", WeightFormat.Q4_K_S)] = path => Qwen2Gqa7H896Ffn4864L2TiedQ4KSMix.Load(path),
        [("qwen2-gqa7-h896-ffn4864-l2-tied", WeightFormat.Q5_K_M)] = path => Qwen2Gqa7H896Ffn4864L2TiedQ5KMMix.Load(path),
        [("qwen2-gqa7-h896-ffn4864-l2-tied", WeightFormat.Q6_K)] = path => Qwen2Gqa7H896Ffn4864L2TiedQ6KMix.Load(path),
        [("qwen2-gqa7-h896-ffn4864-l2-tied", WeightFormat.Q8_0)] = path => Qwen2Gqa7H896Ffn4864L2TiedQ8Mix.Load(path),
        [("qwen2-gqa7-h896-ffn4864-l2-tied", WeightFormat.MostlyQ4_0)] = path => Qwen2Gqa7H896Ffn4864L2TiedMostlyQ4Mix.Load(path),
        [("gqa2-hd64-ffn768-l4-untied", WeightFormat.Q5_K_S)] = path => Gqa2Hd64Ffn768L4UntiedQ5KSMix.Load(path),
        [("gqa2-hd64-ffn768-l4-untied", WeightFormat.MostlyQ4_1)] = path => Gqa2Hd64Ffn768L4UntiedMostlyQ41Mix.Load(path),
        [("gqa4-hd64-h1024-v32000-tied", WeightFormat.Q5_K_S)] = path => Gqa4Hd64H1024V32000TiedQ5KSMix.Load(path),
        [("gqa4-hd64-h1024-v32000-tied", WeightFormat.MostlyQ4_1)] = path => Gqa4Hd64H1024V32000TiedMostlyQ41Mix.Load(path),
        [("gqa8-hd64-untied", WeightFormat.Q5_K_S)] = path => Gqa8Hd64UntiedQ5KSMix.Load(path),
        [("gqa8-hd64-untied", WeightFormat.MostlyQ4_1)] = path => Gqa8Hd64UntiedMostlyQ41Mix.Load(path),
        [("gqa3-hd32-h288-ffn928-untied", WeightFormat.Q5_K_S)] = path => Gqa3Hd32H288Ffn928UntiedQ5KSMix.Load(path),
        [("gqa3-hd32-h288-ffn928-untied", WeightFormat.MostlyQ4_1)] = path => Gqa3Hd32H288Ffn928UntiedMostlyQ41Mix.Load(path),
        [("qwen2-gqa2-h256-ffn768-biases", WeightFormat.Q5_K_S)] = path => Qwen2Gqa2H256Ffn768BiasesQ5KSMix.Load(path),
        [("qwen2-gqa2-h256-ffn768-biases", WeightFormat.MostlyQ4_1)] = path => Qwen2Gqa2H256Ffn768BiasesMostlyQ41Mix.Load(path),
        [("qwen2-gqa7-h896-ffn4864-l2-tied", WeightFormat.Q5_K_S)] = path => Qwen2Gqa7H896Ffn4864L2TiedQ5KSMix.Load(path),
        [("qwen2-gqa7-h896-ffn4864-l2-tied", WeightFormat.MostlyQ4_1)] = path => Qwen2Gqa7H896Ffn4864L2TiedMostlyQ41Mix.Load(path),
    };
}
