using System;
using System.Collections.Generic;
using System.Linq;
using System.Text.Json;
using System.Threading.Tasks;
using Json.Schema;
using Microsoft.Extensions.AI;
using Microsoft.ML.Tokenizers;
using Xunit;
using Xunit.Abstractions;

namespace Llama.Compiled.Tests.Grammars;

/// <summary>Constrained generation through the real paths: TextGenerator and BatchedGenerator on the compiled stories260K, and LlamaChatClient's response formats.</summary>
public class ConstrainedGenerationTests(ITestOutputHelper output)
{
    private const string PersonSchema = """
        {"type":"object","properties":{
          "name":{"type":"string","maxLength":12},
          "age":{"type":"integer","minimum":0,"maximum":120},
          "happy":{"type":"boolean"},
          "color":{"enum":["red","green","blue","é"]},
          "tags":{"type":"array","items":{"type":"string","pattern":"^[a-z]{1,6}$"},"maxItems":3}},
         "required":["name","age","happy","color"],"additionalProperties":false}
        """;

    private static readonly EvaluationOptions Validation = new() { RequireFormatValidation = true };

    [Fact]
    public void TextGeneratorOutputsValidateOnTheRealModel()
    {
        using var model = Stories260K.Load(TestPaths.Stories260KHf);
        using var session = model.CreateSession();
        Tokenizer tokenizer = LlamaTokenizers.Load(TestPaths.Stories260KHf);
        var generator = new TextGenerator(session, tokenizer);
        Grammar grammar = Grammar.FromJsonSchema(PersonSchema);
        JsonSchema validator = JsonSchema.FromText(PersonSchema);
        for (ulong seed = 1; seed <= 5; seed++)
        {
            var options = new GenerationOptions { MaxNewTokens = 400, Grammar = grammar, Sampling = new SamplingOptions { Temperature = 1f, Seed = seed } };
            GenerationResult result = generator.GenerateText("Once upon a time, Lily wrote:", options);
            output.WriteLine($"{result.Stats.StopReason} {result.Stats.GeneratedTokens}: {result.Text}");
            Assert.Equal(StopReason.EndOfSequence, result.Stats.StopReason);
            using JsonDocument document = JsonDocument.Parse(result.Text);
            Assert.True(validator.Evaluate(document.RootElement, Validation).IsValid, result.Text);
        }
    }

    [Fact]
    public void GbnfGrammarConstrainsTheRealModelAndEndsWhereTheGrammarEnds()
    {
        using var model = Stories260K.Load(TestPaths.Stories260KHf);
        using var session = model.CreateSession();
        Tokenizer tokenizer = LlamaTokenizers.Load(TestPaths.Stories260KHf);
        var generator = new TextGenerator(session, tokenizer);
        Grammar grammar = Grammar.FromGbnf("""
            root ::= "Lily " verb " the " noun "."
            verb ::= "saw" | "liked" | "found"
            noun ::= [a-z]{3,8}
            """);
        for (ulong seed = 1; seed <= 4; seed++)
        {
            GenerationResult result = generator.GenerateText("Once upon a time,", new GenerationOptions { MaxNewTokens = 100, Grammar = grammar, Sampling = new SamplingOptions { Seed = seed } });
            output.WriteLine(result.Text);
            Assert.True(grammar.IsMatch(result.Text.TrimStart()), result.Text);
            Assert.Equal(StopReason.EndOfSequence, result.Stats.StopReason);
        }
    }

    [Fact]
    public async Task BatchedGeneratorHonoursTheGrammarOfEachGeneration()
    {
        using var model = Stories260K.Load(TestPaths.Stories260KHf);
        Tokenizer tokenizer = LlamaTokenizers.Load(TestPaths.Stories260KHf);
        using var batched = new BatchedGenerator(model, tokenizer);
        Grammar person = Grammar.FromJsonSchema(PersonSchema);
        Grammar digits = Grammar.FromGbnf("root ::= [0-9]{2,4} \"!\"");
        int[] prompt = [.. tokenizer.EncodeToIds("Once upon a time")];
        var runs = new List<(BatchedGeneration Run, Grammar Grammar)>();
        for (int i = 0; i < 4; i++)
        {
            Grammar g = i % 2 == 0 ? person : digits;
            runs.Add((batched.Start(prompt, new GenerationOptions { MaxNewTokens = 400, Grammar = g, Sampling = new SamplingOptions { Seed = (ulong)i } }), g));
        }
        foreach ((BatchedGeneration run, Grammar g) in runs)
        {
            GenerationResult result = await run.Completion;
            output.WriteLine(result.Text);
            Assert.True(g.IsMatch(result.Text.TrimStart()), result.Text);
        }
    }

    // long: the schema .NET exports for an int has no bounds, and a valid answer may have up to 16 digits.
    [Fact]
    public void TheTextIsTheGrammarsBytesWithoutTheTokenizersCleanUp()
    {
        // Llama 3's tokenizer cleans up " ," to "," when decoding; under a grammar the text is what was matched.
        Vocab llama3 = Vocabs.Llama3;
        var tokenizer = (ByteLevelBpeTokenizer)llama3.Tokenizer;
        int[] ids = [.. tokenizer.EncodeToIds("x ,y !", addSpecialTokens: false)];
        var model = new FakeLlamaModel(llama3.VocabSize, 512, ids);
        var generator = new TextGenerator(model.CreateSession(), tokenizer);
        Grammar grammar = Grammar.FromGbnf("root ::= \"x ,y !\"");
        GenerationResult result = generator.GenerateText("a", new GenerationOptions { Grammar = grammar, Sampling = new SamplingOptions { Temperature = 0f } });
        Assert.Equal("x ,y !", result.Text);
        Assert.Equal(StopReason.EndOfSequence, result.Stats.StopReason);
        Assert.Equal("x,y!", tokenizer.Decode(ids));
    }

    public sealed record Pet(string Name, long Legs, bool Friendly, string[] Toys);

    [Fact]
    public async Task GetResponseAsyncOfARecordReturnsAParsedValue()
    {
        Tokenizer tokenizer = LlamaTokenizers.Load(TestPaths.Stories260KHf);
        var model = new RandomLogitsModel(tokenizer, seed: 7);
        using LlamaChatClient client = model.AsChatClient(tokenizer, ChatTemplate.Plain, new GenerationOptions { MaxNewTokens = 3000 });
        for (int i = 0; i < 5; i++)
        {
            ChatResponse<Pet> response = await client.GetResponseAsync<Pet>([new ChatMessage(ChatRole.User, "Describe a pet.")], new ChatOptions { Seed = i });
            output.WriteLine(response.Text);
            Assert.True(response.TryGetResult(out Pet? pet), response.Text);
            Assert.NotNull(pet!.Name);
            Assert.NotNull(pet.Toys);
        }
    }

    [Fact]
    public async Task JsonResponseFormatGivesAJsonObject()
    {
        Tokenizer tokenizer = LlamaTokenizers.Load(TestPaths.Stories260KHf);
        var model = new RandomLogitsModel(tokenizer, seed: 3);
        using LlamaChatClient client = model.AsChatClient(tokenizer, ChatTemplate.Plain, new GenerationOptions { MaxNewTokens = 3000 });
        ChatResponse response = await client.GetResponseAsync([new ChatMessage(ChatRole.User, "JSON please")], new ChatOptions { ResponseFormat = ChatResponseFormat.Json, Seed = 1 });
        using JsonDocument document = JsonDocument.Parse(response.Text);
        Assert.Equal(JsonValueKind.Object, document.RootElement.ValueKind);
        Assert.Equal(ChatFinishReason.Stop, response.FinishReason);
    }
}

/// <summary>A model whose logits are seeded noise with a bias toward one-character punctuation and digit tokens (see <see cref="RandomModel"/>).</summary>
internal sealed class RandomLogitsModel(Tokenizer tokenizer, int seed) : ILlamaModel
{
    public LlamaModelShape Shape { get; } = new(
        HiddenSize: 8, IntermediateSize: 16, LayerCount: 1, HeadCount: 1, KvHeadCount: 1, HeadDim: 8,
        VocabSize: 512, MaxContext: 4096, RmsNormEps: 1e-5f, RopeTheta: 10000f,
        TiedEmbeddings: true, BosTokenId: 1, EosTokenIds: [2]);

    public Tokenizer Tokenizer { get; } = tokenizer;

    public ILlamaSession CreateSession() => new RandomLogitsSession(this, seed);

    public void Dispose() { }
}

internal sealed class RandomLogitsSession(RandomLogitsModel model, int seed) : ILlamaSession
{
    private readonly float[] _logits = new float[model.Shape.VocabSize];
    private readonly Random _random = new(seed);
    private readonly bool[] _structural = Structural(model.Tokenizer, model.Shape.VocabSize);

    public ILlamaModel Model => model;

    public int Position { get; private set; }

    public ReadOnlySpan<float> Forward(ReadOnlySpan<int> tokens)
    {
        Position += tokens.Length;
        float bias = MathF.Log(_logits.Length) - 1f;
        for (int i = 0; i < _logits.Length; i++)
            _logits[i] = (float)(_random.NextDouble() * 2 - 1) * 1.7f + (_structural[i] ? bias : 0f);
        return _logits;
    }

    public ReadOnlySpan<float> Forward(int token) => Forward(new[] { token });

    public SessionOptions Options { get; } = new();

    public ReadOnlySpan<float> Logits => _logits;

    public void Save(System.IO.Stream stream) => throw new NotSupportedException();

    public void Restore(System.IO.Stream stream) => throw new NotSupportedException();

    public void Reset() => Position = 0;

    public void Dispose() { }

    private static bool[] Structural(Tokenizer tokenizer, int size)
    {
        var result = new bool[size];
        for (int id = 3; id < size; id++)
        {
            string text = tokenizer.Decode([id]);
            result[id] = text.Length == 1 && (char.IsAsciiDigit(text[0]) || "\"{}[],:".Contains(text[0], StringComparison.Ordinal));
        }
        result[2] = true;
        return result;
    }
}
