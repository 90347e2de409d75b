using System;
using System.Collections;
using System.Collections.Immutable;
using System.Linq;
using System.Reflection;
using Microsoft.CodeAnalysis;
using Xunit;

namespace Llama.Compiled.Generator.Tests;

/// <summary>
/// [LlamaModel("model.gguf")] with the header file build/Llama.Compiled.targets writes: the ModelSpec a config.json
/// would give, with every matrix's stored format. The spec is read from the Plans step's output (the generator's types
/// are internal, so by reflection); what the generated class states is read from its constants.
/// </summary>
public sealed class GgufHeaderTests
{
    private static readonly string Source = GeneratorHarness.ModelSource("\"models/model.gguf\"");

    private sealed record Result(GeneratorRunResult Run, ImmutableArray<Diagnostic> Diagnostics, object? Plan, object? Spec, Compilation Output);

    private static Result Compile(string source, params (string Path, string Text)[] files)
    {
        GeneratorDriver driver = GeneratorHarness.CreateDriver(files.Select(f => (AdditionalText)new InMemoryAdditionalText(f.Path, f.Text)), trackSteps: true);
        driver = driver.RunGeneratorsAndUpdateCompilation(GeneratorHarness.CreateCompilation(source), out Compilation output, out ImmutableArray<Diagnostic> diagnostics);
        GeneratorRunResult run = driver.GetRunResult().Results.Single();
        Assert.Null(run.Exception);
        object? plan = Get(run.TrackedSteps["Plans"].SelectMany(r => r.Outputs).First().Value, "Plan");
        return new Result(run, diagnostics, plan, plan is null ? null : Get(plan, "Spec"), output);
    }

    private static Result Compile(GgufHeaderBuilder header) => Compile(Source, header.Item());

    private static float[] InverseFrequencies(Result result) => ((IEnumerable)Get(result.Plan, "RopeInverseFrequencies")!).Cast<float>().ToArray();

    private static object? Get(object? value, string property) =>
        value!.GetType().GetProperty(property, BindingFlags.Public | BindingFlags.Instance)!.GetValue(value);

    private static object Clean(Result result)
    {
        Assert.True(result.Diagnostics.IsEmpty, string.Join(Environment.NewLine, result.Diagnostics));
        Assert.NotNull(result.Spec);
        return result.Spec!;
    }

    private static object? Constant(Result result, string name) =>
        result.Output.GetTypeByMetadataName("UserApp.TestModel")!.GetMembers(name).OfType<IFieldSymbol>().Single().ConstantValue;

    private static string[] LayerFormats(object spec, string matrix) =>
        ((IEnumerable)Get(Get(spec, "StoredFormats"), "Layers")!).Cast<object>().Select(l => Get(l, matrix)!.ToString()!).ToArray();

    [Fact]
    public void Stories260KF32GivesTheShapeOfItsConfigJson()
    {
        Result result = Compile(GgufHeaderBuilder.Stories260K());
        object spec = Clean(result);
        Assert.Equal(2, result.Run.GeneratedSources.Length);
        Assert.Empty(result.Output.GetDiagnostics().Where(d => d.Severity == DiagnosticSeverity.Error));

        Assert.Equal(64, Constant(result, "HiddenSize"));
        Assert.Equal(172, Constant(result, "IntermediateSize"));
        Assert.Equal(5, Constant(result, "LayerCount"));
        Assert.Equal(8, Constant(result, "HeadCount"));
        Assert.Equal(4, Constant(result, "KvHeadCount"));
        Assert.Equal(8, Constant(result, "HeadDim"));
        Assert.Equal(512, Constant(result, "VocabSize"));
        Assert.Equal(512, Constant(result, "MaxContext"));
        Assert.Equal(1e-5f, Constant(result, "RmsNormEps"));
        Assert.Equal(10000f, Constant(result, "RopeTheta"));
        Assert.Equal(1, Constant(result, "BosTokenId"));
        Assert.Equal(2, Constant(result, "EosTokenId"));
        // The f32 GGUF stores output.weight (a copy of the embedding): untied.
        Assert.Equal(false, Constant(result, "TiedEmbeddings"));

        Assert.Equal("llama", Get(spec, "ModelType"));
        object formats = Get(spec, "StoredFormats")!;
        Assert.Equal("F32", Get(formats, "TokenEmbedding")!.ToString());
        Assert.Equal("F32", Get(formats, "Classifier")!.ToString());
        Assert.Equal(5, LayerFormats(spec, "Query").Length);
        foreach (string matrix in new[] { "Query", "Key", "Value", "Output", "Gate", "Up", "Down" })
            Assert.All(LayerFormats(spec, matrix), f => Assert.Equal("F32", f));
    }

    [Fact]
    public void EachMatrixKeepsItsOwnFormat()
    {
        // A Q4_K_M-like mix at a width whose rows split into 256-weight super-blocks; BF16 is computed as F32.
        GgufHeaderBuilder header = GgufHeaderBuilder.Stories260K(layers: 2, hidden: 256, ffn: 512, heads: 4, kvHeads: 2, matrixType: 12)
            .Retype(n => n == "blk.0.attn_v.weight" || n == "blk.1.ffn_down.weight", 14)
            .Retype(n => n == "blk.0.ffn_down.weight", 13)
            .Retype(n => n == "blk.1.attn_q.weight", 8)
            .Retype(n => n == "blk.1.attn_k.weight", 30)
            .Retype(n => n == "token_embd.weight", 2)
            .Retype(n => n == "output.weight", 1);
        object spec = Clean(Compile(header));
        object formats = Get(spec, "StoredFormats")!;
        Assert.Equal("Q4_0", Get(formats, "TokenEmbedding")!.ToString());
        Assert.Equal("F16", Get(formats, "Classifier")!.ToString());
        Assert.Equal(["Q4_K", "Q8_0"], LayerFormats(spec, "Query"));
        Assert.Equal(["Q4_K", "F32"], LayerFormats(spec, "Key"));
        Assert.Equal(["Q6_K", "Q4_K"], LayerFormats(spec, "Value"));
        Assert.Equal(["Q5_K", "Q6_K"], LayerFormats(spec, "Down"));
    }

    [Theory]
    [InlineData(3, "Q4_1")]
    [InlineData(6, "Q5_0")]
    [InlineData(7, "Q5_1")]
    [InlineData(8, "Q8_0")]
    [InlineData(2, "Q4_0")]
    public void BlockFormatsOf32WeightsMap(int ggmlType, string format)
    {
        object spec = Clean(Compile(GgufHeaderBuilder.Stories260K(ffn: 192, matrixType: ggmlType)));
        Assert.Equal(format, Get(Get(spec, "StoredFormats"), "TokenEmbedding")!.ToString());
        Assert.All(LayerFormats(spec, "Down"), f => Assert.Equal(format, f));
    }

    [Fact]
    public void NoOutputWeightMeansTiedEmbeddings()
    {
        Result result = Compile(GgufHeaderBuilder.Stories260K().WithoutTensor("output.weight"));
        object spec = Clean(result);
        Assert.Equal(true, Constant(result, "TiedEmbeddings"));
        Assert.Null(Get(Get(spec, "StoredFormats"), "Classifier"));
    }

    [Fact]
    public void EndOfTurnTokensAreExtraEndOfSequenceTokens()
    {
        Result result = Compile(GgufHeaderBuilder.Stories260K()
            .With("tokenizer.ggml.eot_token_id", "7").With("tokenizer.ggml.eom_token_id", "2"));
        object spec = Clean(result);
        Assert.Equal([2, 7], ((IEnumerable)Get(spec, "EosTokenIds")!).Cast<int>());
    }

    [Fact]
    public void VocabularySizeFallsBackToTheTokenList()
    {
        Result withKey = Compile(GgufHeaderBuilder.Stories260K().With("llama.vocab_size", "512"));
        Assert.Equal(512, Constant(withKey, "VocabSize"));
        Clean(withKey);
    }

    [Fact]
    public void Qwen2HasQkvBiases()
    {
        GgufHeaderBuilder header = GgufHeaderBuilder.Stories260K(arch: "qwen2", layers: 2);
        for (int i = 0; i < 2; i++)
        {
            header = header.WithTensor($"blk.{i}.attn_q.bias", 0, 64).WithTensor($"blk.{i}.attn_k.bias", 0, 32).WithTensor($"blk.{i}.attn_v.bias", 0, 32);
        }
        object spec = Clean(Compile(header));
        Assert.Equal("qwen2", Get(spec, "ModelType"));
        Assert.Equal(true, Get(spec, "QkvBias"));
        Assert.Equal(false, Get(spec, "OutputBias"));
        Assert.Equal(false, Get(spec, "MlpBias"));
    }

    [Fact]
    public void LinearRopeScaling()
    {
        object spec = Clean(Compile(GgufHeaderBuilder.Stories260K()
            .With("llama.rope.scaling.type", "\"linear\"").With("llama.rope.scaling.factor", "4")));
        object scaling = Get(spec, "RopeScaling")!;
        Assert.Equal("linear", Get(scaling, "Type"));
        Assert.Equal(4.0, Get(scaling, "Factor"));

        Assert.Null(Get(Clean(Compile(GgufHeaderBuilder.Stories260K().With("llama.rope.scaling.type", "\"none\""))), "RopeScaling"));
    }

    [Fact]
    public void RopeFreqsDivideTheInverseFrequencies()
    {
        // stories260K's head of 8: theta^(-2j/8) = 1, 0.1, 0.01, 0.001, each divided by its factor as llama.cpp's rope does.
        Result result = Compile(GgufHeaderBuilder.Stories260K().WithRopeFrequencyFactors(1f, 2.5f, 10f, 32f));
        object spec = Clean(result);
        Assert.Equal([1f, 2.5f, 10f, 32f], ((IEnumerable)Get(spec, "RopeFrequencyFactors")!).Cast<float>());
        Assert.Null(Get(spec, "RopeScaling"));
        Assert.Equal([1f, (float)(0.1 / 2.5), (float)(0.01 / 10), (float)(0.001 / 32)], InverseFrequencies(result));

        string model = result.Run.GeneratedSources.Single(s => s.HintName.EndsWith("TestModel.g.cs", StringComparison.Ordinal)).SourceText.ToString();
        Assert.Contains("RoPE frequency factors from rope_freqs.weight applied at build time", model);
        // The runtime rejects tensors nobody asked for; the factors are compiled in, so the tensor is only acknowledged.
        Assert.Contains("weights.MarkUsed(\"rope_freqs.weight\");", model);
        Assert.Empty(result.Output.GetDiagnostics().Where(d => d.Severity == DiagnosticSeverity.Error));

        Assert.DoesNotContain("rope_freqs", Compile(GgufHeaderBuilder.Stories260K()).Run.GeneratedSources.Single(s => s.HintName.EndsWith("TestModel.g.cs", StringComparison.Ordinal)).SourceText.ToString());
    }

    [Fact]
    public void RopeFreqsGiveTheInverseFrequenciesOfTheirLlama3Config()
    {
        // The factors llama.cpp's converter writes for a rope_scaling, and the config.json with that rope_scaling: one
        // set of frequencies up to the rounding of the stored factors. Theta 500000 and heads of 64 (Llama 3.2 1B), an
        // original context short enough that every case of the llama3 formula appears: kept, blended and divided.
        const string scaling = "{\"rope_type\": \"llama3\", \"factor\": 32.0, \"low_freq_factor\": 1.0, \"high_freq_factor\": 4.0, \"original_max_position_embeddings\": 8192}";
        float[] factors = Llama3Factors(64, 500000, 32, 1, 4, 8192);
        Assert.Contains(1f, factors);
        Assert.Contains(32f, factors);
        Assert.Contains(factors, f => f is > 1f and < 32f);

        Result gguf = Compile(GgufHeaderBuilder.Stories260K(hidden: 128, heads: 2, kvHeads: 1)
            .With("llama.rope.freq_base", "500000").WithRopeFrequencyFactors(factors));
        Clean(gguf);
        ConfigBuilder config = ConfigBuilder.Tiny().With("hidden_size", "128").With("num_attention_heads", "2").With("num_key_value_heads", "1")
            .With("rope_theta", "500000.0").With("rope_scaling", scaling);
        Result fromConfig = Compile(GeneratorHarness.ModelSource(), ("models/config.json", config.ToString()));
        Clean(fromConfig);

        float[] expected = InverseFrequencies(fromConfig), actual = InverseFrequencies(gguf);
        Assert.Equal(32, actual.Length);
        for (int j = 0; j < actual.Length; j++)
            Assert.True(Math.Abs(actual[j] - expected[j]) <= 1e-6 * expected[j], $"pair {j}: {actual[j]} from rope_freqs.weight, {expected[j]} from rope_scaling");
    }

    /// <summary>convert_hf_to_gguf.py's rope_freqs for Llama 3: the reciprocal of transformers' per-frequency scale.</summary>
    private static float[] Llama3Factors(int headDim, double theta, double factor, double low, double high, int original) =>
        Enumerable.Range(0, headDim / 2).Select(j =>
        {
            double wavelength = 2 * Math.PI * Math.Pow(theta, 2.0 * j / headDim);
            if (wavelength < original / high)
                return 1f;
            if (wavelength > original / low)
                return (float)factor;
            double smooth = (original / wavelength - low) / (high - low);
            return (float)(1 / ((1 - smooth) / factor + smooth));
        }).ToArray();

    [Fact]
    public void MaxContextCapsTheFilesContext()
    {
        Result result = Compile(GeneratorHarness.ModelSource("\"models/model.gguf\", MaxContext = 128"), GgufHeaderBuilder.Stories260K().Item());
        Clean(result);
        Assert.Equal(128, Constant(result, "MaxContext"));
    }

    [Theory]
    [InlineData("\"models/model.gguf\"")]      // relative to /project/Models.cs
    [InlineData("\"model.gguf\"")]             // a suffix of the GGUF's path
    [InlineData("\"/project/models/model.gguf\"")]
    public void TheAttributeNamesTheGgufNotTheHeaderFile(string argument)
    {
        Clean(Compile(GeneratorHarness.ModelSource(argument), GgufHeaderBuilder.Stories260K().Item()));
    }

    [Fact]
    public void TwoGgufsOfOneNameAreTwoModels()
    {
        string source = GeneratorHarness.ModelSource("\"a/model.gguf\"") + "\n[LlamaModel(\"b/model.gguf\")]\npublic partial class Other;";
        (string, string) a = GgufHeaderBuilder.Stories260K().Item("/project/a/model.gguf");
        (string, string) b = GgufHeaderBuilder.Stories260K(layers: 2).Item("/project/b/model.gguf");
        Result result = Compile(source, (a.Item1.Replace("model.", "a.model.", StringComparison.Ordinal), a.Item2), b);
        Assert.True(result.Diagnostics.IsEmpty, string.Join(Environment.NewLine, result.Diagnostics));
        Assert.Equal(5, result.Output.GetTypeByMetadataName("UserApp.TestModel")!.GetMembers("LayerCount").OfType<IFieldSymbol>().Single().ConstantValue);
        Assert.Equal(2, result.Output.GetTypeByMetadataName("UserApp.Other")!.GetMembers("LayerCount").OfType<IFieldSymbol>().Single().ConstantValue);
    }
}
